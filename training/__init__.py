"""Offline training: MIDI corpora → tokens → Keras LSTM → one self-describing ONNX file.

Data flow, one module per step::

    corpus (files → quantized notes, cached) → dataset (split, chord vocabulary, windows)
    → model (Keras LSTM) / reference (the paper's window net, ``--arch reference``) → train
    (fit, checkpoints, resume, early stop; distribute for several workers) → export (→ ONNX)
    → evaluate (held-out NLL and top-1 beside markov baselines; onnx_runner runs the files in
    onnxruntime)

``cli`` wires ``antiphon train`` and ``antiphon evaluate``.  TensorFlow and music21 are imported
only inside this package, lazily, by the commands that need them.  ``training`` may import
``bridge`` (the token scheme, the MIDI file reader, the model loader); ``bridge`` never imports it.
"""

__all__: list[str] = []
