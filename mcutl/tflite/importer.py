"""int8 .tflite -> quantised IR; implemented in ``mcutl.frontend.tflite_import``."""

from mcutl.frontend.tflite_import import SUPPORTED, import_tflite

__all__ = ["SUPPORTED", "import_tflite"]
