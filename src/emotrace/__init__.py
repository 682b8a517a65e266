"""emotrace: multimodal speech emotion recognition that shows where the emotion lives."""

__version__ = "0.1.0"
