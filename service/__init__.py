"""Code shared by the API and the workers: settings, database, job state, storage, queue names."""
