"""Developer tools the app never imports: a package so tests and benchmarks can import `tools.synthetic_gemma`."""
