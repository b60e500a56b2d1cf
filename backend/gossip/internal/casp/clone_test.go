package casp

import "slices"

// clone deep-copies a round for proposer p (the copy of r's proposer), so the
// exhaustive search can branch from one state into many.
func (r *Round) clone(p *Proposer) *Round {
	c := *r
	c.p = p
	c.peers = slices.Clone(r.peers)
	c.order = slices.Clone(r.order)
	return &c
}
