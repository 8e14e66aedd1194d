"""The pure core: states, the model, observations, actions and decide(); the standard library only."""
