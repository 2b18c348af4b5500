"""The built-in encoders. Importing this package imports every module in it, and each module
registers its encoders with `cvos.models.register_encoder`: a new backbone is one file here."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
