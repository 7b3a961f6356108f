DROP INDEX reservations_settled;
