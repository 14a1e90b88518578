"""vittle: Visual Instruction Bottleneck Tuning as a command-line toolkit."""

__version__ = "0.1.0"
