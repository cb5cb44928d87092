"""Thunder training recipe: corpus, on-the-fly mixing, model, training, evaluation, ONNX export."""
