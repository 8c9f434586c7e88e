"""Web pages for people: sign-in sessions, CSRF, security headers and the pages each service serves."""
