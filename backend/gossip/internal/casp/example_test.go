package casp_test

import (
	"fmt"

	"github.com/b3df926d/leaderelection/backend/gossip/internal/casp"
)

// A write and a quorum read, with the messages passed by hand: the glue does
// the same over memberlist, with a context bounding each round.
func Example() {
	voters := []string{"a", "b", "c"}
	acceptors := map[string]*casp.Acceptor{}
	for i, v := range voters {
		a, err := casp.NewAcceptor(casp.AcceptorConfig{Name: v, Voters: voters, Incarnation: uint64(100 + i)})
		if err != nil {
			panic(err)
		}
		_ = a.Reinitialize() // a brand-new register: nothing to recover
		acceptors[v] = a
	}
	p, err := casp.NewProposer(casp.ProposerConfig{Node: "candidate-1", Incarnation: 7, Voters: voters})
	if err != nil {
		panic(err)
	}
	run := func(r *casp.Round) casp.Outcome {
		queue := r.Prepares()
		for len(queue) > 0 {
			m := queue[0]
			queue = queue[1:]
			reply, err := acceptors[m.To].Handle(0, m) // a voter: persist, then reply
			if err != nil || reply == nil {
				continue
			}
			more, _ := r.Handle(*reply) // back at the proposer
			queue = append(queue, more...)
		}
		return r.Outcome()
	}

	created := run(p.Start(0, casp.Create([]byte("holder=candidate-1"))))
	fmt.Println(created.Status, created.Wrote, string(created.Value.Data), created.Value.Version)

	read := run(p.Start(0, casp.Read))
	fmt.Println(read.Status, string(read.Value.Data), read.Value.Token() == created.Value.Token())

	stale := run(p.Start(0, casp.Create([]byte("holder=candidate-2"))))
	fmt.Println(stale.Status, stale.Err != nil)
	// Output:
	// chosen true holder=candidate-1 1
	// chosen holder=candidate-1 true
	// chosen true
}
