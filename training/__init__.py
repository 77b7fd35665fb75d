"""Offline training: MIDI corpora → tokens → Keras LSTM → one self-describing ONNX file.

TensorFlow and music21 are imported only inside this package (lazily, by the commands that need
them).  ``training`` may import ``bridge`` (for the token scheme); ``bridge`` never imports it.
"""

__all__: list[str] = []
