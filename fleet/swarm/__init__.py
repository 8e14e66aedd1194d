"""Docker Swarm: the edge in front of the cells, and a cell that drains itself before it stops."""
