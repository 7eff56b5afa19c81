"""Chat with documents: text extraction, passages, and their index (Qt-free)."""
