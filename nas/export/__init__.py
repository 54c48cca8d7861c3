"""Getting found architectures out: self-contained arch.json files and models rebuilt from them."""

from nas.export._archfile import load_architecture, read_architecture_file, write_architecture_file

__all__ = ["load_architecture", "read_architecture_file", "write_architecture_file"]
