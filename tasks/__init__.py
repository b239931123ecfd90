"""mmstack: idempotent operations for a self-hosted LLM multimodal stack."""
