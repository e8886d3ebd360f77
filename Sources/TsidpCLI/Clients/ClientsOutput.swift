import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What `tsidp clients` prints: a table or lines for people, JSON with `--json`.
///
/// - Important: A secret is printed only by ``created(_:)`` (`add`, `regenerate-secret`), to
///   standard output; nothing here logs.
final class ClientsOutput {
    let json: Bool
    private(set) var standardOutput = ""
    /// Answers a yes/no question; nil when there is no terminal to ask on.
    let ask: (@Sendable (String) -> Bool?)

    init(json: Bool, ask: @escaping @Sendable (String) -> Bool?) {
        self.json = json
        self.ask = ask
    }

    private func print(_ line: String) { standardOutput += line + "\n" }

    private func printJSON(_ value: some Encodable) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data("null".utf8)
        print(String(decoding: data, as: UTF8.self))
    }

    func list(_ clients: [ClientRecord]) {
        if json { return printJSON(clients) }
        guard !clients.isEmpty else { return print("No clients.") }
        let rows =
            [["NAME", "CLIENT ID", "REDIRECT URIS", "CREATED"]]
            + clients.map {
                [
                    $0.clientName.isEmpty ? "-" : $0.clientName, $0.clientID, $0.redirectURIs.joined(separator: ", "),
                    $0.createdAt,
                ]
            }
        let widths = (0..<3).map { column in rows.map { Self.visible($0[column]).count }.max() ?? 0 }
        for row in rows {
            var line = ""
            for column in 0..<3 {
                let cell = Self.visible(row[column])
                line += cell + String(repeating: " ", count: widths[column] - cell.count + 2)
            }
            print(line + Self.visible(row[3]))
        }
    }

    func show(_ client: ClientRecord) {
        if json { return printJSON(client) }
        print("Name:           \(Self.visible(client.clientName))")
        print("Client ID:      \(client.clientID)")
        print("Authentication: \(client.tokenEndpointAuthMethod)\(client.hasSecret ? "" : " (no secret)")")
        print("Registered by:  \(client.dynamicallyRegistered ? "dynamic registration" : "the operator")")
        print("Created:        \(client.createdAt)")
        if client.subjectType != "public" { print("Subjects:       \(client.subjectType)") }
        print("Redirect URIs:")
        for uri in client.redirectURIs { print("  \(Self.visible(uri))") }
        if !client.resources.isEmpty {
            print("Resources served:")
            for uri in client.resources { print("  \(Self.visible(uri))") }
        }
    }

    func created(_ client: ClientRecord) {
        if json { return printJSON(client) }
        print("Client ID:     \(client.clientID)")
        if let secret = client.clientSecret {
            print("Client secret: \(secret)")
            print("Save the secret now: tsidp keeps only its digest and cannot show it again.")
        } else {
            print("Public client: no secret; it must use PKCE (S256).")
        }
    }

    func deleted(_ id: String) {
        if json { return printJSON(["deleted": id]) }
        print("Deleted client \(id).")
    }

    func confirm(_ question: String) -> Bool {
        ask(question) ?? false
    }

    /// `text` with control characters escaped, so a stored name cannot move the cursor or forge
    /// lines on the operator's terminal.
    static func visible(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F || (0x80..<0xA0).contains(scalar.value) {
                result += String(format: "\\x%02x", scalar.value)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}
