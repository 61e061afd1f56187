"""alpha: built against shapes 1.x, where area() is a plain function."""

from shapes import area


def report(radius: float) -> str:
    """Describe a circle of the given radius."""
    return f"radius {radius}: area {area(radius):.2f}"


def main() -> None:
    print("π ≈ 3.14 — 🚀", area(2.0))  # non-ASCII first: 🚀 is two UTF-16 code units
    print(report(2.0))


if __name__ == "__main__":
    main()
