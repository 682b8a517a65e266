"""Using trained models: cut long recordings into speech segments, predict emotions, draw
what a model saw, and export models to ONNX. Inference reads audio, labels, features and
models; it never imports training or the command line, so a deployment can ship without them.
"""
