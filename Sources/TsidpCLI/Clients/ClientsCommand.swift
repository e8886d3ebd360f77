import ArgumentParser

/// `tsidp clients …`: the operator's client management without a browser.
struct ClientsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tsidp clients",
        abstract: "Manage tsidp's OAuth clients from the command line.",
        discussion: """
            The clients are reached one of two ways:
              --server URL   a running tsidp's --local-port listener, http://127.0.0.1:PORT
                             (env TSIDP_LOCAL_URL)
              --dir DIR      the state directory of a stopped tsidp (env TS_STATE_DIR);
                             refused while a tsidp server runs on that directory
            A flag wins over both variables; TSIDP_LOCAL_URL wins over TS_STATE_DIR.

            Exit status: 0 done, 1 the operation failed, 2 a usage mistake.
            """,
        subcommands: [
            ClientsList.self, ClientsAdd.self, ClientsShow.self, ClientsUpdate.self, ClientsRegenerateSecret.self,
            ClientsDelete.self,
        ])
}

/// Where the clients are, and how to print them.
struct ClientsOptions: ParsableArguments {
    @Option(
        name: .customLong("server"),
        help: "A running tsidp's --local-port listener, e.g. http://127.0.0.1:9090. Env: TSIDP_LOCAL_URL.")
    var server: String?

    @Option(name: .customLong("dir"), help: "The state directory of a stopped tsidp. Env: TS_STATE_DIR.")
    var dir: String?

    @Option(
        name: .customLong("state"),
        help: "Not supported by tsidp clients: a kube:<secret> store is managed through --server.")
    var state: String?

    @Flag(name: .customLong("json"), help: "Print JSON, for scripts.")
    var json = false
}

/// A subcommand of `tsidp clients`.
protocol ClientsSubcommand: ParsableCommand {
    var options: ClientsOptions { get }
    /// Checks what the arguments alone can tell; throws ``UsageError``.
    func validateArguments() throws
    func run(on backend: any ClientsBackend, output: ClientsOutput) async throws
}

extension ClientsSubcommand {
    func validateArguments() throws {}
}

struct ClientsList: ClientsSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the clients: name, client ID, redirect URIs, creation time.")
    @OptionGroup var options: ClientsOptions

    func run(on backend: any ClientsBackend, output: ClientsOutput) async throws {
        output.list(try await backend.list())
    }
}

struct ClientsAdd: ClientsSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "add", abstract: "Register a client; prints its client ID and secret, once.")
    @OptionGroup var options: ClientsOptions
    @Option(name: .customLong("name"), help: "The client's name, shown to operators and on consent pages.")
    var name: String?
    @Option(name: .customLong("redirect-uri"), help: "A redirect URI; repeat for more than one.")
    var redirectURIs: [String] = []
    @Option(
        name: .customLong("resource"),
        help: "A resource URI the client serves as a resource server (it may introspect tokens for it); repeatable.")
    var resources: [String] = []
    @Flag(name: .customLong("public"), help: "A public client (no secret; it must use PKCE S256).")
    var isPublic = false
    @Flag(
        name: .customLong("pairwise"),
        help: "Pairwise subjects: the client sees users under a sub of its own sector, not userid:<n>.")
    var pairwise = false

    func validateArguments() throws {
        guard let name, !name.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw UsageError("add needs --name NAME")
        }
        guard !redirectURIs.isEmpty else { throw UsageError("add needs at least one --redirect-uri URI") }
    }

    func run(on backend: any ClientsBackend, output: ClientsOutput) async throws {
        let created = try await backend.add(
            name: name ?? "", redirectURIs: redirectURIs, resources: resources, isPublic: isPublic, pairwise: pairwise)
        output.created(created)
    }
}

struct ClientsShow: ClientsSubcommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show one client (no secret).")
    @OptionGroup var options: ClientsOptions
    @Argument(help: "The client ID.") var clientID: String

    func run(on backend: any ClientsBackend, output: ClientsOutput) async throws {
        output.show(try await backend.show(clientID))
    }
}

struct ClientsUpdate: ClientsSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "update",
        abstract: "Change a client's name, redirect URIs or resource URIs (given URIs replace that list).")
    @OptionGroup var options: ClientsOptions
    @Argument(help: "The client ID.") var clientID: String
    @Option(name: .customLong("name"), help: "The new name.") var name: String?
    @Option(name: .customLong("redirect-uri"), help: "A redirect URI; repeat for more; replaces the list.")
    var redirectURIs: [String] = []
    @Option(
        name: .customLong("resource"), help: "A resource URI the client serves; repeat for more; replaces the list.")
    var resources: [String] = []
    @Flag(name: .customLong("no-resources"), help: "Remove every resource URI the client serves.")
    var clearResources = false

    func validateArguments() throws {
        guard name != nil || !redirectURIs.isEmpty || !resources.isEmpty || clearResources else {
            throw UsageError("update needs --name, --redirect-uri, --resource or --no-resources")
        }
        guard !(clearResources && !resources.isEmpty) else {
            throw UsageError("use --resource or --no-resources, not both")
        }
    }

    func run(on backend: any ClientsBackend, output: ClientsOutput) async throws {
        let updated = try await backend.update(
            clientID, name: name, redirectURIs: redirectURIs.isEmpty ? nil : redirectURIs,
            resources: clearResources ? [] : resources.isEmpty ? nil : resources)
        output.show(updated)
    }
}

struct ClientsRegenerateSecret: ClientsSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "regenerate-secret", abstract: "Replace a client's secret; prints the new one, once.")
    @OptionGroup var options: ClientsOptions
    @Argument(help: "The client ID.") var clientID: String

    func run(on backend: any ClientsBackend, output: ClientsOutput) async throws {
        output.created(try await backend.regenerateSecret(clientID))
    }
}

struct ClientsDelete: ClientsSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete a client and end its tokens.")
    @OptionGroup var options: ClientsOptions
    @Argument(help: "The client ID.") var clientID: String
    @Flag(name: .customLong("yes"), help: "Do not ask for confirmation (needed when not on a terminal).")
    var yes = false

    func run(on backend: any ClientsBackend, output: ClientsOutput) async throws {
        if !yes {
            let client = try await backend.show(clientID)
            guard
                output.confirm(
                    "Delete client \(client.clientName.isEmpty ? "(unnamed)" : client.clientName) (\(clientID))?")
            else {
                throw UsageError("not deleted: confirm on a terminal, or pass --yes")
            }
        }
        try await backend.delete(clientID)
        output.deleted(clientID)
    }
}
