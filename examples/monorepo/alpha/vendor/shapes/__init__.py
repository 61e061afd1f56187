"""shapes 1.x (alpha): the original API, where area() is a plain function."""

import math


def area(radius: float) -> float:
    """Return the area of a circle of the given radius."""
    return math.pi * radius**2
