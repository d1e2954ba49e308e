"""Text generation: sampling (pure functions) and the interactive prompt."""
