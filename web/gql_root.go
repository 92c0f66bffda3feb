package web

import "github.com/graphql-go/graphql"

// queryType assembles Query from the fields each area contributes.
func (g *schemaBuilder) queryType() *graphql.Object {
	f := graphql.Fields{}
	g.userQueries(f)
	g.jobQueries(f)
	g.secretQueries(f)
	g.webhookQueries(f)
	return graphql.NewObject(graphql.ObjectConfig{Name: "Query", Fields: f})
}

// mutationType assembles Mutation.
func (g *schemaBuilder) mutationType() *graphql.Object {
	f := graphql.Fields{}
	g.jobMutations(f)
	g.secretMutations(f)
	g.webhookMutations(f)
	g.workerMutations(f)
	g.deleteUserMutation(f)
	return graphql.NewObject(graphql.ObjectConfig{Name: "Mutation", Fields: f})
}
