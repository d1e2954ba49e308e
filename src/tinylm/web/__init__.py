"""The playground (`tinylm serve`): a local web page that compares runs token by token on any text, samples
several runs at once, and shows the shipped results."""
