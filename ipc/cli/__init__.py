"""Command-line tools: the luaipc interpreter and ipcctl."""
