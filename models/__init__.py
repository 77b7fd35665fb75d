"""Antiphon's shipped models and their cards (``README.md``, ``FORMAT.md``).

This folder is installed as the package ``antiphon_models`` (package data: every ``*.onnx``), so
a plain ``pip install``, pipx or a wheel ships the models; :func:`bridge.model.default_model_dirs`
finds them there, or here in a source checkout.  There is no code in it.
"""
