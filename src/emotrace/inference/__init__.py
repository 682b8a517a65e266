"""Using trained models, from audio to explanation, in the order a prediction runs:

``media`` reads a file's audio and face video into pieces; ``predictor`` feeds one file (or
waveform) to a checkpoint as training did and asks the model's output to explain itself;
``audiovisual`` runs an audio model, a face-video model and their fusion together and compares
their attention (``roi_compare``); ``segmentation`` cuts long recordings into speech
segments first; ``predictions`` are the results and their JSON; ``batch`` runs many files
(speaker grouping, skip and report); ``writers`` turn results into JSON, CSV, tables and
``plots``; ``export`` writes ONNX. Inference reads audio, labels, features and models; it
never imports training or the command line, so a deployment can ship without them.
"""
