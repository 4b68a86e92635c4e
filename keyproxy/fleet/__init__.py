"""More than one keyproxy: the state that must agree across instances, kept in Redis (`[shared_state]`).

`store.FleetStore` is the only door to Redis (the layering test holds it): the vault as a sealed image with
its change count, halts and throttles, the change stream every instance follows, instance heartbeats.
`sync.FleetSync` is an instance's follower: it applies what another instance changed and says how far it got.
Redis sees the vault's sealed blobs and clear metadata only, never a plaintext or virtual secret.
"""
