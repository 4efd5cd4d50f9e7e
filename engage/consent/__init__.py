"""Dynamic consent: versioned forms, per-scope choices, a hash-chained ledger and receipts."""
