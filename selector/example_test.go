package selector_test

import (
	"errors"
	"fmt"

	"github.com/calyxnet/calyx/selector"
)

func ExampleParse() {
	s, err := selector.Parse(`app == 'payment-service' && tier notin {"db", "cache",}`)
	if err != nil {
		panic(err)
	}
	fmt.Println(s)
	fmt.Println(s.UniqueID())

	_, err = selector.Parse("app ==")
	var pe *selector.ParseError
	if errors.As(err, &pe) {
		fmt.Println(pe.Offset, pe.Expected)
	}
	// Output:
	// (app == "payment-service" && tier not in {"cache", "db"})
	// s:zcHgVGthUc9JQksLrrwkYFop5p48nXN--u9pug
	// 6 a quoted value
}

func ExampleSelector_Matches() {
	s := selector.MustParse(`app == "api" && env != "prod"`)
	fmt.Println(s.Matches(selector.Set{"app": "api", "env": "dev"}))
	fmt.Println(s.Matches(selector.Set{"app": "api"})) // != matches a missing label
	fmt.Println(s.Matches(selector.Set{"app": "api", "env": "prod"}))
	// Output:
	// true
	// true
	// false
}

func ExampleSelector_WithKeyPrefix() {
	// A rule's namespaceSelector is evaluated over the labels an endpoint
	// inherits from its namespace, which carry the "pcns." prefix.
	ns := selector.MustParse(`team == "payments"`).WithKeyPrefix("pcns.")
	pods := selector.MustParse(`app == "api"`)
	fmt.Println(selector.And(ns, pods))
	// Output:
	// (pcns.team == "payments" && app == "api")
}

func ExampleIndex() {
	ix := selector.NewIndex(
		func(sel, item string) { fmt.Println("start", sel, item) },
		func(sel, item string) { fmt.Println("stop ", sel, item) },
	)
	ix.UpdateSelector("api", selector.MustParse(`app == "api"`))
	ix.UpdateSelector("payments-team", selector.MustParse(`pcns.team == "payments"`))

	// Pods inherit the labels of their namespace.
	ix.UpdateParentLabels("ns/shop", map[string]string{"pcns.team": "payments"})
	ix.UpdateLabels("pod/api-1", map[string]string{"app": "api"}, "ns/shop")
	ix.UpdateLabels("pod/web-1", map[string]string{"app": "web"}, "ns/shop")

	// One namespace change moves every pod in it.
	ix.UpdateParentLabels("ns/shop", map[string]string{"pcns.team": "storefront"})
	fmt.Println(ix.ItemsMatching("api"), ix.ItemsMatching("payments-team"))
	// Output:
	// start api pod/api-1
	// start payments-team pod/api-1
	// start payments-team pod/web-1
	// stop  payments-team pod/api-1
	// stop  payments-team pod/web-1
	// [pod/api-1] []
}
