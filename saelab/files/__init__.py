"""What is written to disk: atomic writes (atomic) and the model file format (model_file)."""
