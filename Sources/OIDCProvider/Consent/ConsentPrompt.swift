import Foundation

/// What the consent page shows for a sign-in into a client the operator did not vet, and the
/// values its form posts back.
public struct ConsentPrompt: Sendable, Equatable {
    /// Names the parked request; posted back as `request`.
    public var requestID: String
    /// Posted back as `csrf_token`; compared in constant time.
    public var csrfToken: String
    public var clientID: String
    public var clientName: String
    /// Where the browser goes next: the redirect URI's host (or its scheme, for an app).
    public var redirectHost: String
    /// The redirect URI's origin, which the page's form may be redirected to.
    public var redirectOrigin: String?
    /// Who is signing in.
    public var userLogin: String
    /// What the client will learn, one line each, in the person's words.
    public var claims: [String]
    /// Whether the client was registered through dynamic registration (anyone with the grant).
    public var dynamicallyRegistered: Bool
}

/// What the person decided on the consent page.
public enum ConsentDecision: Sendable, Equatable {
    case allow
    case deny
}
