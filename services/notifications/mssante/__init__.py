"""The MSSanté mail channel: a team's secure-messaging address, discharge letters mailed to it with an IHE XDM
zip (CDA R2 and PDF), and the receipts (RFC 8098 MDN, RFC 3464 DSN) read back from Relais' mailbox.

Mails ride the notifications service's one delivery queue (target kind `mssante`): leases, retries with
backoff, per-organisation fair shares and dead letters are the webhooks' own. See docs/mssante.md.
"""
