"""The bundled CLIP: model (open_clip-compatible state dict), tokenizer, training, eval."""
