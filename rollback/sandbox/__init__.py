"""Local stand-ins for the drill and the tests: the moto server for AWS, the
Vercel API emulator and a throwaway PostgreSQL cluster. Never imported by the
CLI at start-up."""
