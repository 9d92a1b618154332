"""Language models that ship with the package: the NumPy transformer and the scripted test model."""
