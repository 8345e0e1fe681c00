"""Document chat: turning dropped files into text that keeps its page, heading or line references."""
