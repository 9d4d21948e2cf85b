"""The real executor: model (reference.model), loaders, tokenizer, prompts, and the SPD runtime built on them."""
