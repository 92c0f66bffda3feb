package web

import (
	"github.com/graphql-go/graphql"

	"builds/app"
)

// Entity, User, Version and Settings, with the queries that return them.

func (g *schemaBuilder) userTypes() {
	userOf := func(p graphql.ResolveParams) *app.User { return p.Source.(*app.User) }
	g.entity = graphql.NewInterface(graphql.InterfaceConfig{
		Name: "Entity",
		Fields: graphql.Fields{
			"id":      {Type: nn(graphql.Int)},
			"created": {Type: nn(g.timeT)},
			"updated": {Type: nn(g.timeT)},
			"canonicalName": {Type: nn(graphql.String), Description: "The canonical name of this entity. For users, this is their username " +
				"prefixed with '~'. Additional entity types will be supported in the future."},
		},
		ResolveType: func(p graphql.ResolveTypeParams) *graphql.Object { return g.user },
	})
	g.user = graphql.NewObject(graphql.ObjectConfig{
		Name:       "User",
		Interfaces: []*graphql.Interface{g.entity},
		Fields: graphql.FieldsThunk(func() graphql.Fields {
			return graphql.Fields{
				"id":            {Type: nn(graphql.Int), Resolve: func(p graphql.ResolveParams) (any, error) { return userOf(p).ID, nil }},
				"created":       {Type: nn(g.timeT), Resolve: func(p graphql.ResolveParams) (any, error) { return userOf(p).Created, nil }},
				"updated":       {Type: nn(g.timeT), Resolve: func(p graphql.ResolveParams) (any, error) { return userOf(p).Updated, nil }},
				"canonicalName": {Type: nn(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) { return userOf(p).CanonicalName(), nil }},
				"username":      {Type: nn(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) { return userOf(p).Username, nil }},
				"email":         {Type: nn(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) { return userOf(p).Email, nil }},
				"url":           {Type: graphql.String, Resolve: func(p graphql.ResolveParams) (any, error) { return optString(userOf(p).URL), nil }},
				"location":      {Type: graphql.String, Resolve: func(p graphql.ResolveParams) (any, error) { return optString(userOf(p).Location), nil }},
				"bio":           {Type: graphql.String, Resolve: func(p graphql.ResolveParams) (any, error) { return optString(userOf(p).Bio), nil }},
				"jobs": {
					Type:        nn(g.jobCursor),
					Description: "Jobs submitted by this user.",
					Args:        graphql.FieldConfigArgument{"cursor": {Type: g.cursorT}},
					Resolve: g.access(app.ScopeJobs, app.RO, func(p graphql.ResolveParams) (any, error) {
						return g.userJobs(p, userOf(p).ID)
					}),
				},
			}
		}),
	})
	g.settings = graphql.NewObject(graphql.ObjectConfig{
		Name: "Settings",
		Fields: graphql.Fields{
			"sshUser": {Type: nn(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) {
				return g.srv.Service.APISSHUser(), nil
			}},
			"buildTimeout": {Type: nn(graphql.String), Resolve: func(p graphql.ResolveParams) (any, error) {
				return g.srv.config().JobTimeoutString(), nil
			}},
		},
	})
	g.version = graphql.NewObject(graphql.ObjectConfig{
		Name: "Version",
		Fields: graphql.Fields{
			"major": {Type: nn(graphql.Int), Resolve: func(graphql.ResolveParams) (any, error) { return apiMajor, nil }},
			"minor": {Type: nn(graphql.Int), Resolve: func(graphql.ResolveParams) (any, error) { return apiMinor, nil }},
			"patch": {Type: nn(graphql.Int), Resolve: func(graphql.ResolveParams) (any, error) { return apiPatch, nil }},
			"deprecationDate": {Type: g.timeT, Description: "If this API version is scheduled for deprecation, this is the date on which " +
				"it will stop working; or null if this API version is not scheduled for deprecation.",
				Resolve: func(graphql.ResolveParams) (any, error) { return nil, nil }},
			"settings": {Type: nn(g.settings), Resolve: func(graphql.ResolveParams) (any, error) { return struct{}{}, nil }},
		},
	})
}

// userQueries are Query.version, me, userByID and userByName.
func (g *schemaBuilder) userQueries(f graphql.Fields) {
	f["version"] = &graphql.Field{
		Type:        nn(g.version),
		Description: "Returns API version information.",
		Resolve:     func(graphql.ResolveParams) (any, error) { return struct{}{}, nil },
	}
	f["me"] = &graphql.Field{
		Type:        nn(g.user),
		Description: "Returns the authenticated user.",
		Resolve: g.access(app.ScopeProfile, app.RO, func(p graphql.ResolveParams) (any, error) {
			u := app.UserFromContext(p.Context)
			if u == nil {
				return nil, errAuthRequired()
			}
			return u, nil
		}),
	}
	f["userByID"] = &graphql.Field{
		Type:        g.user,
		Description: "Returns a specific user.",
		Args:        graphql.FieldConfigArgument{"id": {Type: nn(graphql.Int)}},
		Resolve: g.access(app.ScopeProfile, app.RO, func(p graphql.ResolveParams) (any, error) {
			return nullIfNotFound(g.srv.Service.User(p.Context, argInt(p, "id")))
		}),
	}
	f["userByName"] = &graphql.Field{
		Type: g.user,
		Args: graphql.FieldConfigArgument{"username": {Type: nn(graphql.String)}},
		Resolve: g.access(app.ScopeProfile, app.RO, func(p graphql.ResolveParams) (any, error) {
			return nullIfNotFound(g.srv.Service.UserByName(p.Context, argString(p, "username")))
		}),
	}
}

// deleteUserMutation is Mutation.deleteUser: the caller deletes their own
// account. It needs a token with all grants (see app.Service.DeleteAccount).
func (g *schemaBuilder) deleteUserMutation(f graphql.Fields) {
	f["deleteUser"] = &graphql.Field{
		Type:        nn(graphql.Int),
		Description: "Deletes the authenticated user's account. Internal use only.",
		Resolve: g.authed(func(p graphql.ResolveParams) (any, error) {
			u, err := g.srv.Service.DeleteAccount(p.Context)
			if err != nil {
				return nil, err
			}
			return u.ID, nil
		}),
	}
}

// nullIfNotFound turns "not found" into a null result, as clients expect
// for nullable lookups (hut prints "no such user" / "invalid job ID").
func nullIfNotFound[T any](v *T, err error) (any, error) {
	if app.ErrorCode(err) == app.ENOTFOUND {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return v, nil
}
