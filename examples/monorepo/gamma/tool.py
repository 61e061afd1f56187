"""gamma has no .venv: typemux-lsp answers with an error instead of guessing one."""


def shout(text: str) -> str:
    """Return the text in capitals, with emphasis."""
    return text.upper() + "!"


if __name__ == "__main__":
    print(shout("hello"))
