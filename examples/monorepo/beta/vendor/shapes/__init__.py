"""shapes 2.x (beta): circles are objects now, and the area() function is gone."""

import math


class Circle:
    """A circle that knows its own area."""

    def __init__(self, radius: float) -> None:
        self.radius = radius

    def area(self) -> float:
        """Return the area of this circle."""
        return math.pi * self.radius**2
