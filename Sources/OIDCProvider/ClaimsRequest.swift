import AnyJSON
import Foundation

/// The `claims` request parameter (OIDC Core §5.5), reduced to what tsidp acts on: which of the
/// claims it can release were asked for in the ID token and in `/userinfo`.
///
/// Essential and voluntary requests are treated alike: a claim tsidp has is returned, one it does
/// not have is left out, and the sign-in never fails for it (OIDC Core §5.5.1). `value` and
/// `values` are checked for shape only, since none of the releasable claims can be steered by them.
public struct ClaimsRequest: Sendable, Equatable, Codable {
    /// Releasable claims asked for in the ID token, in request order.
    public var idToken: [String]
    /// Releasable claims asked for in `/userinfo`, in request order.
    public var userInfo: [String]

    public init(idToken: [String] = [], userInfo: [String] = []) {
        self.idToken = idToken
        self.userInfo = userInfo
    }

    // Short member names keep the grant file compact.
    enum CodingKeys: String, CodingKey {
        case idToken = "i", userInfo = "u"
    }

    /// The identity claims a `claims` request can add without the scope that usually carries them.
    public static let releasable: Set<String> = [
        "name", "preferred_username", "picture", "username", "email", "email_verified", "groups",
    ]

    /// Parses a `claims` parameter. Claims tsidp cannot release are ignored; a value that is not a
    /// JSON object of the §5.5 shape is an `invalid_request`.
    public static func parse(_ text: String) throws -> ClaimsRequest {
        let malformed = OAuthError(.invalidRequest, "claims must be a JSON object as in OpenID Connect Core 5.5")
        guard case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) else {
            throw malformed
        }
        func names(_ member: String) throws -> [String] {
            guard let value = object[member], value != .null else { return [] }
            guard case .object(let requests) = value else { throw malformed }
            for request in requests.values where request != .null {
                guard case .object(let entry) = request else { throw malformed }
                if let essential = entry["essential"], essential.boolValue == nil { throw malformed }
                if let values = entry["values"], values.arrayValue == nil { throw malformed }
            }
            return requests.keys.filter(releasable.contains).sorted()
        }
        return ClaimsRequest(idToken: try names("id_token"), userInfo: try names("userinfo"))
    }

    /// The `acr` values a `claims` parameter requires of the ID token: those of an essential
    /// `acr` request (`value` or `values`, OIDC Core §5.5.1.1), or `nil` when `acr` is not
    /// essential or names no value. Call after ``parse(_:)`` accepted the text.
    public static func essentialACRValues(_ text: String) -> [String]? {
        guard case .object(let object)? = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)),
            case .object(let idToken)? = object["id_token"], case .object(let acr)? = idToken["acr"],
            acr["essential"]?.boolValue == true
        else { return nil }
        var values: [String] = []
        if case .string(let value)? = acr["value"] { values.append(value) }
        for case .string(let value) in acr["values"]?.arrayValue ?? [] { values.append(value) }
        return values.isEmpty ? nil : values
    }
}
