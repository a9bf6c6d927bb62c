"""Argument checks, raised early and naming the argument: validation, memory, argtypes."""
