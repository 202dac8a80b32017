"""The model supply chain: what each profile serves (catalog), where fetched and
converted files live (store), and what was produced (models.lock.json)."""
