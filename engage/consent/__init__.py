"""Dynamic consent: versioned forms, per-scope choices, a hash-chained ledger and receipts.

Read it in this order:

- ``models`` — the tables; ``errors`` — the domain errors and who may act.
- ``queries`` — what other packages (and the consent jobs and emails) may ask: does a person
  permit some scopes, how many do, the published form and its scopes.
- ``versions`` — staff draft, compare and publish form versions.
- ``decisions`` — participants' changes: ledger events, current choices, receipts, leaving.
- ``masks`` — the permitted masks that keep counts off the ledger.
- ``erasure`` — requests to erase a participant's data.
- ``page_queries``, ``forms``, ``views`` (participants) and ``staff_views`` — the pages.
- ``ledger``, ``receipts``, ``exports``, ``fhir``, ``emails``, ``jobs``, ``cli``, ``seed`` —
  verifying the chain, signing receipts, export documents, mail, scheduled work, commands,
  demonstration data.
"""
