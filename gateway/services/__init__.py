"""Plain services behind the routes: no HTTP specifics here."""
