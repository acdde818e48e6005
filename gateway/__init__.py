"""healthhut.gateway: the hut daemon."""
