"""Language models: the protocol (`base`), the KV cache and the driver on it (`cache`), the
layers (`layers`), GPT-2 (`gpt2`) and the Llama family (`llama`) in NumPy, ensembles
(`ensemble`), scripted test models (`scripted`), and loading checkpoints (`loading`)."""
