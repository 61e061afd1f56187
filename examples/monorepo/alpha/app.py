"""alpha: built against shapes 1.x, where area() is a function."""

from shapes import area

BANNER = "π ≈ 3.14 — 🚀"  # non-ASCII on purpose: 🚀 is two UTF-16 code units


def report(radius: float) -> str:
    """Describe a circle of the given radius."""
    return f"{BANNER} area={area(radius):.2f}"


def main() -> None:
    print(area(2.0))
    print(report(2.0))


if __name__ == "__main__":
    main()
