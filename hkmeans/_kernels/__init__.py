"""Compiled kernels. ``cpu`` holds the Numba CPU versions."""
