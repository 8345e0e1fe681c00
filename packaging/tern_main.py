"""The frozen Tern executable's entry point (PyInstaller runs this file)."""

from app.__main__ import main

if __name__ == "__main__":
    main()
