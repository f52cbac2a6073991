"""What each configured store and authority shows on one scan (`stores/`,
`authorities/`), and CRL files and fetches. Sources read; they never judge."""
