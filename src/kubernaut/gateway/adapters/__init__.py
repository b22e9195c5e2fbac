"""Signal sources: each adapter turns one request body into normalised signals or a 400 Problem."""
