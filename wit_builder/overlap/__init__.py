"""Stage 5: eval-set overlap detection (faiss), filtered shards."""
