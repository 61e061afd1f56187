"""beta: built against shapes 2.x, where a circle is an object with an area() method."""

from shapes import Circle


def report(radius: float) -> str:
    """Describe a circle of the given radius."""
    return f"radius {radius}: area {Circle(radius).area():.2f}"


def main() -> None:
    print(report(3.0))


if __name__ == "__main__":
    main()
